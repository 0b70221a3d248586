//! The WeChat Dialogue Open Platform's vocabulary ("Third Party Service System Access - Send Customer Service Message", https://developers.weixin.qq.com/doc/aispeech/confapi/thirdkefu/sendmsg.html): waiter events, what its error
//! codes mean, and an agent message as the platform's `msg` (a string, or the documentation's
//! object). The calls themselves are `transport::chatbot`; the hand-off callback is
//! `source::chatbot`.

use serde_json::{Value, json};

use super::kf::KfMessage;

pub(crate) const EVENTS: [&str; 4] = [
    "waiterEnter",
    "waiterSwitch",
    "waiterQuit",
    "waiterQualityEvaluate",
];

/// What the platform's codes mean, and what to do about them.
pub(crate) fn meaning(code: i64) -> &'static str {
    match code {
        1001 => "TOKEN is not valid: check apps.chatbot.token",
        1002 => "the bot has not passed review",
        1003 => "signature lacks the userid field",
        1004 => "signature field is empty",
        1005 => "signature expired or invalid: check apps.chatbot.encoding_aes_key and appid",
        1006 => "signature check failed (userid missing)",
        1007 => "appid, category, label or desc is empty",
        1008 => "appid, openid or msg is empty",
        1009 | 1011 => "appid is invalid: check apps.chatbot.appid",
        1010 => "appid check failed",
        1013 => "encryption parameters do not match (decrypt failed): check encoding_aes_key",
        1015 => "managerid is invalid",
        1019 => "the open API is not enabled for this bot, or the encryption is wrong",
        3005 => "the Official Account is not verified",
        3014 => "the message contains a sensitive word",
        _ => "unknown error",
    }
}

/// A custom message as the platform's `msg`: a string for text, else the documentation's object.
pub(crate) fn msg_of(kf: &KfMessage) -> Value {
    let c = &kf.content;
    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    match kf.msgtype.as_str() {
        "text" => Value::String(safe_text(&s("content"))),
        "news" => {
            let articles: Vec<Value> = c
                .get("articles")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|a| {
                    let f = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                    let url = f("url");
                    // Official Account articles are `mp`; anything else is an H5 page.
                    let kind = if url.contains("mp.weixin.qq.com") {
                        "mp"
                    } else {
                        "h5"
                    };
                    json!({ "title": f("title"), "description": f("description"), "url": url,
                            "picurl": f("picurl"), "type": kind })
                })
                .collect();
            json!({ "news": { "articles": articles } })
        }
        "image" => json!({ "image": { "media_id": s("media_id"), "url": s("url") } }),
        "miniprogrampage" => json!({ "miniprogrampage": {
            "title": s("title"), "appid": s("appid"), "pagepath": s("pagepath"),
            "thumb_media_id": s("thumb_media_id"), "thumb_url": s("thumb_url"),
        }}),
        "link" => Value::String(link_html(&s("url"), &s("title"))),
        "msgmenu" => Value::String(menu_html(c)),
        other => Value::String(format!("[{other} message]")),
    }
}

/// A `msgmenu` as the platform's own menu links, one per line between the head and the
/// tail: `<a href="weixin://bizmsgmenu?msgmenucontent=…&msgmenuid=…">…</a>` (its send
/// API's "Rich text support", text with recommended questions). A click comes back as the
/// customer's text with `bizmsgmenuid`, as on an Official Account.
fn menu_html(menu: &Value) -> String {
    let f = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let mut lines = vec![escape_html(&f(menu, "head_content"))];
    for item in menu
        .get("list")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (id, content) = (
            escape_html(&f(item, "id")),
            escape_html(&f(item, "content")),
        );
        lines.push(format!(
            "<a href=\"weixin://bizmsgmenu?msgmenucontent={content}&amp;msgmenuid={id}\">{content}</a>"
        ));
    }
    lines.push(escape_html(&f(menu, "tail_content")));
    lines.retain(|l| !l.is_empty());
    lines.join("\n")
}

/// A link as the platform's HTML text: the URL only when it is http(s), both parts escaped,
/// so that an agent's input cannot add markup or a `javascript:` link.
fn link_html(url: &str, title: &str) -> String {
    let title = escape_html(if title.is_empty() { url } else { title });
    let lower = url.trim().to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        format!("<a href=\"{}\">{title}</a>", escape_html(url.trim()))
    } else {
        title
    }
}

/// An agent's text as the platform's HTML: everything escaped but plain links, an
/// `<a href="http(s)://…">` with nothing else in the tag, and `</a>` (a `javascript:` link
/// or an `onerror=` handler from a desk reaches the customer as text).
fn safe_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        out.push_str(&escape_html(&rest[..i]));
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("</a>") {
            out.push_str("</a>");
            rest = after;
        } else if let Some((url, after)) = plain_link(rest) {
            out.push_str(&format!("<a href=\"{}\">", escape_html(url)));
            rest = after;
        } else {
            out.push_str("&lt;");
            rest = &rest[1..];
        }
    }
    out.push_str(&escape_html(rest));
    out
}

/// `<a href="URL">` at the start of `s` with an http(s) URL free of quotes, angle
/// brackets and spaces: (URL, what follows the tag).
fn plain_link(s: &str) -> Option<(&str, &str)> {
    let rest = s.strip_prefix("<a href=\"")?;
    let end = rest.find('"')?;
    let (url, after) = (&rest[..end], rest[end + 1..].strip_prefix('>')?);
    let lower = url.to_ascii_lowercase();
    let ok = (lower.starts_with("https://") || lower.starts_with("http://"))
        && !url.contains(['<', '>', '\'', ' ', '\n', '\t']);
    ok.then_some((url, after))
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What the customer reads with a waiter event that came without text (`msg` is required).
pub(crate) fn default_event_text(event: &str) -> &'static str {
    match event {
        "waiterEnter" => "An agent has joined the conversation.",
        "waiterSwitch" => "You have been transferred to another agent.",
        "waiterQuit" => "The agent has left the conversation.",
        "waiterQualityEvaluate" => "How satisfied are you with this conversation?",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_mapping() {
        let news = KfMessage::parse(
            b"touser=o&msgtype=news&news[articles][0][title]=T&news[articles][0][url]=https://mp.weixin.qq.com/s/x&news[articles][1][title]=U&news[articles][1][url]=https://shop.example/a",
            crate::wechat::AppKind::OfficialAccount,
        )
        .unwrap();
        assert_eq!(
            msg_of(&news),
            json!({"news":{"articles":[
                {"title":"T","description":"","url":"https://mp.weixin.qq.com/s/x","picurl":"","type":"mp"},
                {"title":"U","description":"","url":"https://shop.example/a","picurl":"","type":"h5"}]}})
        );
        assert_eq!(
            msg_of(&KfMessage::text(
                "o",
                "hi <a href=\"https://shop.example/a?x=1&y=2\">y</a>"
            )),
            json!("hi <a href=\"https://shop.example/a?x=1&amp;y=2\">y</a>")
        );
        // Review 2, §4: only plain http(s) links survive as markup.
        for (evil, shown) in [
            (
                "<a href=\"javascript:alert(1)\">win</a>",
                "&lt;a href=&quot;javascript:alert(1)&quot;&gt;win</a>",
            ),
            (
                "<img src=x onerror=alert(1)>",
                "&lt;img src=x onerror=alert(1)&gt;",
            ),
            (
                "<a href=\"https://x.example\" onclick=\"steal()\">x</a>",
                "&lt;a href=&quot;https://x.example&quot; onclick=&quot;steal()&quot;&gt;x</a>",
            ),
        ] {
            assert_eq!(msg_of(&KfMessage::text("o", evil)), json!(shown), "{evil}");
        }
        let link = KfMessage {
            touser: "o".into(),
            msgtype: "link".into(),
            content: json!({"url": "https://shop.example/a?x=1&y=\"><script>", "title": "<b>Sale</b>"}),
            kf_account: None,
            link: None,
        };
        assert_eq!(
            msg_of(&link),
            json!(
                "<a href=\"https://shop.example/a?x=1&amp;y=&quot;&gt;&lt;script&gt;\">&lt;b&gt;Sale&lt;/b&gt;</a>"
            )
        );
        let js = KfMessage {
            content: json!({"url": "javascript:alert(1)", "title": "t"}),
            ..link
        };
        assert_eq!(msg_of(&js), json!("t"));
        let menu = KfMessage {
            msgtype: "msgmenu".into(),
            content: json!({"head_content": "Rate us", "list": [
                {"id": "a1-1", "content": "Good"}, {"id": "a1-2", "content": "<b>Bad</b>"}],
                "tail_content": ""}),
            ..KfMessage::text("o", "")
        };
        assert_eq!(
            msg_of(&menu),
            json!(
                "Rate us\n<a href=\"weixin://bizmsgmenu?msgmenucontent=Good&amp;msgmenuid=a1-1\">Good</a>\n<a href=\"weixin://bizmsgmenu?msgmenucontent=&lt;b&gt;Bad&lt;/b&gt;&amp;msgmenuid=a1-2\">&lt;b&gt;Bad&lt;/b&gt;</a>"
            )
        );
        assert_eq!(
            meaning(1001),
            "TOKEN is not valid: check apps.chatbot.token"
        );
    }
}
