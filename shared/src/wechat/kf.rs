//! Customer-service ("kf") messages: what an agent sends to a customer through WeChat's
//! `cgi-bin/message/custom/send`. Desks post them as bracket-keyed forms (Udesk:
//! `text[content]=...`, `news[articles][0][title]=...`) or as JSON; both are turned into
//! the exact JSON WeChat expects for the message type, checked per account kind.

use serde_json::{Map, Value, json};

use crate::wechat::AppKind;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KfError {
    #[error("the body is neither a form nor a JSON object: {0}")]
    Unreadable(String),
    #[error("missing field {0}")]
    Missing(String),
    #[error("field {0} must be {1}")]
    Invalid(String, &'static str),
    #[error("the form is too complex: {0}")]
    TooComplex(String),
    #[error("msgtype {msgtype:?} cannot be sent to a {kind} (accepted: {accepted})")]
    UnsupportedType {
        msgtype: String,
        kind: &'static str,
        accepted: &'static str,
    },
}

/// A validated custom-send message; `to_json` is the body WeChat gets.
#[derive(Debug, Clone, PartialEq)]
pub struct KfMessage {
    pub touser: String,
    pub msgtype: String,
    /// The type's own object, with only the fields WeChat knows, in its order.
    pub content: Value,
    pub kf_account: Option<String>,
    /// Where a media part came from (a desk's URL), for when it must go as text.
    pub link: Option<String>,
}

impl KfMessage {
    pub(crate) fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("touser".into(), Value::String(self.touser.clone()));
        m.insert("msgtype".into(), Value::String(self.msgtype.clone()));
        m.insert(self.msgtype.clone(), self.content.clone());
        if let Some(kf) = &self.kf_account {
            m.insert("customservice".into(), json!({ "kf_account": kf }));
        }
        Value::Object(m)
    }

    /// A text message's content; None for every other type.
    pub(crate) fn text_content(&self) -> Option<&str> {
        (self.msgtype == "text")
            .then(|| self.content.get("content").and_then(Value::as_str))
            .flatten()
    }

    /// The part as a line of text: a text's content, a media part by its link.
    pub(crate) fn as_text(&self) -> String {
        if let Some(t) = self.text_content() {
            return t.to_owned();
        }
        let label = match self.msgtype.as_str() {
            "image" => "Image".to_owned(),
            "voice" => "Voice".to_owned(),
            "video" => "Video".to_owned(),
            other => format!("{other} message"),
        };
        match &self.link {
            Some(link) => format!("[{label}] {link}"),
            None => format!("[{label}]"),
        }
    }

    /// The same part, remembering the URL it came from.
    pub(crate) fn with_link(mut self, link: &str) -> Self {
        self.link = Some(link.to_owned());
        self
    }

    /// A plain text message.
    pub fn text(touser: &str, content: &str) -> Self {
        KfMessage {
            touser: touser.to_owned(),
            msgtype: "text".into(),
            content: json!({ "content": content }),
            kf_account: None,
            link: None,
        }
    }

    /// An image, voice or video message by media id.
    pub fn media(touser: &str, msgtype: &str, media_id: &str) -> Self {
        KfMessage {
            touser: touser.to_owned(),
            msgtype: msgtype.to_owned(),
            content: json!({ "media_id": media_id }),
            kf_account: None,
            link: None,
        }
    }

    /// Parses a desk's body: JSON when it looks like a JSON object, else a
    /// `application/x-www-form-urlencoded` form with bracket keys.
    pub fn parse(body: &[u8], kind: AppKind) -> Result<Self, KfError> {
        let doc = parse_body(body)?;
        Self::from_value(&doc, kind)
    }

    pub(crate) fn from_value(doc: &Value, kind: AppKind) -> Result<Self, KfError> {
        let touser = required_str(doc, "touser", "touser")?;
        // It becomes part of store keys (conversation state): an openid's shape only.
        if crate::support::ids::OpenId::parse(&touser).is_err() {
            return Err(KfError::Invalid(
                "touser".into(),
                "an openid (1-64 letters, digits, '_' or '-')",
            ));
        }
        let msgtype = required_str(doc, "msgtype", "msgtype")?;
        let spec = spec_for(&msgtype, kind)?;
        let obj = doc
            .get(&msgtype)
            .ok_or_else(|| KfError::Missing(msgtype.clone()))?;
        let content = (spec.build)(obj, &msgtype)?;
        let kf_account = doc
            .get("customservice")
            .and_then(|c| c.get("kf_account"))
            .and_then(scalar)
            .filter(|s| !s.is_empty());
        Ok(KfMessage {
            touser,
            msgtype,
            content,
            kf_account,
            link: None,
        })
    }
}

/// What to do with a desk's passive reply for a Mini Program, which takes only
/// `transfer_customer_service` passively.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PassivePlan {
    /// Answer WeChat with the reply as is.
    Keep,
    /// Answer `success` and send this through the custom-send API.
    Send(KfMessage),
}

/// Maps a passive-reply XML to a Mini Program custom message: text → text, image → image,
/// news → link (its first article).
pub(crate) fn plan_mini_program_reply(xml: &str, touser: &str) -> Result<PassivePlan, KfError> {
    let doc = super::xml::Doc::parse_xml(xml)
        .map_err(|e| KfError::Unreadable(format!("passive reply: {e}")))?
        .to_json();
    let msgtype = required_str(&doc, "MsgType", "MsgType")?;
    let (msgtype, content) = match msgtype.as_str() {
        "transfer_customer_service" => return Ok(PassivePlan::Keep),
        "text" => (
            "text",
            json!({ "content": required_str(&doc, "Content", "Content")? }),
        ),
        "image" => {
            let image = doc.get("Image").unwrap_or(&Value::Null);
            (
                "image",
                json!({ "media_id": required_str(image, "MediaId", "Image.MediaId")? }),
            )
        }
        "news" => {
            let item = doc
                .get("Articles")
                .and_then(|a| a.get("item"))
                .unwrap_or(&Value::Null);
            let first = match item {
                Value::Array(items) => items.first().unwrap_or(&Value::Null),
                other => other,
            };
            let opt = |f: &str| first.get(f).and_then(scalar).unwrap_or_default();
            (
                "link",
                json!({
                    "title": required_str(first, "Title", "Articles.item.Title")?,
                    "description": opt("Description"),
                    "url": required_str(first, "Url", "Articles.item.Url")?,
                    "thumb_url": opt("PicUrl"),
                }),
            )
        }
        _ => {
            return Err(KfError::UnsupportedType {
                msgtype,
                kind: "mini program (as a custom message from a passive reply)",
                accepted: "text, image, news, transfer_customer_service",
            });
        }
    };
    Ok(PassivePlan::Send(KfMessage {
        touser: touser.to_owned(),
        msgtype: msgtype.to_owned(),
        content,
        kf_account: None,
        link: None,
    }))
}

/// A form or JSON body as one JSON document.
pub(crate) fn parse_body(body: &[u8]) -> Result<Value, KfError> {
    let text = std::str::from_utf8(body).map_err(|_| KfError::Unreadable("not UTF-8".into()))?;
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if trimmed.starts_with('{') {
        let v: Value =
            serde_json::from_str(trimmed).map_err(|e| KfError::Unreadable(e.to_string()))?;
        return Ok(v);
    }
    if trimmed.is_empty() {
        return Err(KfError::Unreadable("the body is empty".into()));
    }
    form_to_json(
        form_urlencoded::parse(trimmed.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())),
    )
}

/// Bracket levels a form key may have: `news[articles][0][title]` has 3, and no
/// custom-send shape needs more than 8. The decoder recurses once per level, so this bound
/// is what keeps a hostile key from exhausting the stack.
pub const MAX_KEY_DEPTH: usize = 8;
/// Fields a form may have (a news message with 8 articles of 4 fields is 35).
pub const MAX_FIELDS: usize = 256;

/// Bracket keys to nested JSON, as Rails and PHP read them: `a[b]=1` → `{"a":{"b":"1"}}`,
/// `a[0][t]=x` → an array, and `a[][t]=x&a[][u]=y&a[][t]=z` → a new element whenever a
/// key repeats in the last one.
/// Refused beyond `MAX_KEY_DEPTH` levels or `MAX_FIELDS` fields.
pub fn form_to_json(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Value, KfError> {
    let mut root = Value::Object(Map::new());
    for (n, (key, value)) in pairs.into_iter().enumerate() {
        if n >= MAX_FIELDS {
            return Err(KfError::TooComplex(format!(
                "more than {MAX_FIELDS} fields"
            )));
        }
        let path = split_key(&key)?;
        insert(&mut root, &path, Value::String(value));
    }
    normalise_arrays(&mut root);
    Ok(root)
}

#[derive(Debug, PartialEq)]
enum Seg<'a> {
    Name(&'a str),
    Push,
}

fn split_key(key: &str) -> Result<Vec<Seg<'_>>, KfError> {
    let (head, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    let mut out = vec![Seg::Name(head)];
    while let Some(stripped) = rest.strip_prefix('[') {
        let Some(end) = stripped.find(']') else { break };
        if out.len() > MAX_KEY_DEPTH {
            return Err(KfError::TooComplex(format!(
                "a field name is nested deeper than {MAX_KEY_DEPTH} [..] levels"
            )));
        }
        let inner = &stripped[..end];
        out.push(if inner.is_empty() {
            Seg::Push
        } else {
            Seg::Name(inner)
        });
        rest = &stripped[end + 1..];
    }
    Ok(out)
}

/// Indexed elements (`[0]`) are kept as objects keyed by index until `normalise_arrays`;
/// `[]` elements go straight into arrays.
fn insert(node: &mut Value, path: &[Seg<'_>], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        *node = value;
        return;
    };
    match first {
        Seg::Name(name) => {
            if !node.is_object() {
                *node = Value::Object(Map::new());
            }
            let Value::Object(map) = node else { return };
            let child = map.entry((*name).to_owned()).or_insert(Value::Null);
            insert(child, rest, value);
        }
        Seg::Push => {
            if !node.is_array() {
                *node = Value::Array(Vec::new());
            }
            let Value::Array(items) = node else { return };
            // `a[][t]`: the last element takes the field unless it already has it.
            let reuse = match (items.last(), rest.first()) {
                (Some(Value::Object(last)), Some(Seg::Name(field))) => {
                    !last.contains_key(*field) || rest.len() > 1
                }
                _ => false,
            };
            if !reuse {
                items.push(Value::Null);
            }
            if let Some(last) = items.last_mut() {
                insert(last, rest, value);
            }
        }
    }
}

/// Objects whose keys are all indexes become arrays in index order.
fn normalise_arrays(node: &mut Value) {
    match node {
        Value::Object(map) => {
            for v in map.values_mut() {
                normalise_arrays(v);
            }
            if !map.is_empty() && map.keys().all(|k| k.parse::<usize>().is_ok()) {
                let mut items: Vec<(usize, Value)> = std::mem::take(map)
                    .into_iter()
                    .filter_map(|(k, v)| k.parse().ok().map(|i| (i, v)))
                    .collect();
                items.sort_by_key(|(i, _)| *i);
                *node = Value::Array(items.into_iter().map(|(_, v)| v).collect());
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise_arrays),
        _ => {}
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn required_str(obj: &Value, field: &str, path: &str) -> Result<String, KfError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(KfError::Missing(path.to_owned())),
        Some(v) => match scalar(v) {
            Some(s) if !s.trim().is_empty() => Ok(s),
            Some(_) => Err(KfError::Missing(path.to_owned())),
            None => Err(KfError::Invalid(path.to_owned(), "a string")),
        },
    }
}

/// The fields of one object: required ones must be present and non-empty, optional ones
/// are copied when present; everything else is dropped.
fn pick(obj: &Value, path: &str, required: &[&str], optional: &[&str]) -> Result<Value, KfError> {
    if !obj.is_object() {
        return Err(KfError::Invalid(path.to_owned(), "an object"));
    }
    let mut out = Map::new();
    for f in required {
        out.insert(
            (*f).to_owned(),
            Value::String(required_str(obj, f, &format!("{path}[{f}]"))?),
        );
    }
    for f in optional {
        if let Some(v) = obj.get(*f).and_then(scalar) {
            out.insert((*f).to_owned(), Value::String(v));
        }
    }
    Ok(Value::Object(out))
}

struct Spec {
    build: fn(&Value, &str) -> Result<Value, KfError>,
}

const OA_TYPES: &str = "text, image, voice, video, music, news, mpnews, mpnewsarticle, msgmenu, miniprogrampage, wxcard";
const MP_TYPES: &str = "text, image, link, miniprogrampage";

fn spec_for(msgtype: &str, kind: AppKind) -> Result<Spec, KfError> {
    let build: fn(&Value, &str) -> Result<Value, KfError> = match (kind, msgtype) {
        (_, "text") => |o, p| pick(o, p, &["content"], &[]),
        (_, "image") => |o, p| pick(o, p, &["media_id"], &[]),
        (AppKind::OfficialAccount, "voice") => |o, p| pick(o, p, &["media_id"], &[]),
        (AppKind::OfficialAccount, "video") => |o, p| {
            pick(
                o,
                p,
                &["media_id"],
                &["thumb_media_id", "title", "description"],
            )
        },
        (AppKind::OfficialAccount, "music") => |o, p| {
            pick(
                o,
                p,
                &["musicurl", "hqmusicurl", "thumb_media_id"],
                &["title", "description"],
            )
        },
        (AppKind::OfficialAccount, "news") => news,
        (AppKind::OfficialAccount, "mpnews") => |o, p| pick(o, p, &["media_id"], &[]),
        (AppKind::OfficialAccount, "mpnewsarticle") => |o, p| pick(o, p, &["article_id"], &[]),
        (AppKind::OfficialAccount, "wxcard") => |o, p| pick(o, p, &["card_id"], &[]),
        (AppKind::OfficialAccount, "msgmenu") => msgmenu,
        (AppKind::OfficialAccount, "miniprogrampage") => {
            |o, p| pick(o, p, &["title", "appid", "pagepath", "thumb_media_id"], &[])
        }
        (AppKind::MiniProgram, "link") => {
            |o, p| pick(o, p, &["title", "description", "url", "thumb_url"], &[])
        }
        (AppKind::MiniProgram, "miniprogrampage") => {
            |o, p| pick(o, p, &["title", "pagepath", "thumb_media_id"], &[])
        }
        (AppKind::OfficialAccount, _) => {
            return Err(KfError::UnsupportedType {
                msgtype: msgtype.to_owned(),
                kind: "official account",
                accepted: OA_TYPES,
            });
        }
        (AppKind::MiniProgram, _) => {
            return Err(KfError::UnsupportedType {
                msgtype: msgtype.to_owned(),
                kind: "mini program",
                accepted: MP_TYPES,
            });
        }
    };
    Ok(Spec { build })
}

fn news(obj: &Value, path: &str) -> Result<Value, KfError> {
    let articles = obj
        .get("articles")
        .ok_or_else(|| KfError::Missing(format!("{path}[articles]")))?;
    let list: Vec<&Value> = match articles {
        Value::Array(a) => a.iter().collect(),
        // One article given without an index: `news[articles][title]=...`.
        Value::Object(_) => vec![articles],
        _ => return Err(KfError::Invalid(format!("{path}[articles]"), "an array")),
    };
    if list.is_empty() {
        return Err(KfError::Missing(format!("{path}[articles][0]")));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, a) in list.into_iter().enumerate() {
        out.push(pick(
            a,
            &format!("{path}[articles][{i}]"),
            &["title"],
            &["description", "url", "picurl"],
        )?);
    }
    Ok(json!({ "articles": out }))
}

fn msgmenu(obj: &Value, path: &str) -> Result<Value, KfError> {
    let list = match obj.get("list") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) | None => return Err(KfError::Missing(format!("{path}[list]"))),
        Some(_) => return Err(KfError::Invalid(format!("{path}[list]"), "an array")),
    };
    let mut items = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        items.push(pick(
            item,
            &format!("{path}[list][{i}]"),
            &["id", "content"],
            &[],
        )?);
    }
    let mut m = Map::new();
    for f in ["head_content", "tail_content"] {
        m.insert(
            f.to_owned(),
            Value::String(obj.get(f).and_then(scalar).unwrap_or_default()),
        );
    }
    m.insert("list".into(), Value::Array(items));
    // WeChat's order: head, list, tail.
    let mut ordered = Map::new();
    for f in ["head_content", "list", "tail_content"] {
        if let Some(v) = m.remove(f) {
            ordered.insert(f.to_owned(), v);
        }
    }
    Ok(Value::Object(ordered))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oa(body: &str) -> Result<Value, KfError> {
        KfMessage::parse(body.as_bytes(), AppKind::OfficialAccount).map(|m| m.to_json())
    }

    #[test]
    fn documented_text_example() {
        // The documentation's own curl example (Udesk's simulated-WeChat page, section 2).
        assert_eq!(
            oa("touser=o2IGD0a1OvYAEBfPRa8t34Wc2nUo&msgtype=text&text[content]=123").unwrap(),
            json!({"touser":"o2IGD0a1OvYAEBfPRa8t34Wc2nUo","msgtype":"text","text":{"content":"123"}})
        );
        // Percent-encoded brackets, as curl --data-urlencode and browsers send them.
        assert_eq!(
            oa("touser=o1&msgtype=text&text%5Bcontent%5D=%E4%BD%A0%E5%A5%BD+a%26b").unwrap(),
            json!({"touser":"o1","msgtype":"text","text":{"content":"你好 a&b"}})
        );
    }

    #[test]
    fn media_types() {
        for t in ["image", "voice"] {
            assert_eq!(
                oa(&format!("touser=o1&msgtype={t}&{t}[media_id]=M1")).unwrap(),
                json!({"touser":"o1","msgtype":t,t:{"media_id":"M1"}})
            );
        }
        assert_eq!(
            oa("touser=o1&msgtype=video&video[media_id]=M1&video[thumb_media_id]=T&video[title]=t&video[description]=d").unwrap(),
            json!({"touser":"o1","msgtype":"video","video":{"media_id":"M1","thumb_media_id":"T","title":"t","description":"d"}})
        );
        assert_eq!(
            oa("touser=o1&msgtype=video&video[media_id]=M1").unwrap(),
            json!({"touser":"o1","msgtype":"video","video":{"media_id":"M1"}})
        );
    }

    #[test]
    fn news_in_both_array_forms() {
        let want = json!({"touser":"o1","msgtype":"news","news":{"articles":[
            {"title":"T1","description":"D1","url":"http://u/1","picurl":"http://p/1"},
            {"title":"T2","url":"http://u/2"}]}});
        assert_eq!(
            oa("touser=o1&msgtype=news&news[articles][0][title]=T1&news[articles][0][description]=D1\
                &news[articles][0][url]=http://u/1&news[articles][0][picurl]=http://p/1\
                &news[articles][1][title]=T2&news[articles][1][url]=http://u/2")
            .unwrap(),
            want
        );
        assert_eq!(
            oa(
                "touser=o1&msgtype=news&news[articles][][title]=T1&news[articles][][description]=D1\
                &news[articles][][url]=http://u/1&news[articles][][picurl]=http://p/1\
                &news[articles][][title]=T2&news[articles][][url]=http://u/2"
            )
            .unwrap(),
            want
        );
        // Indexes out of order still give index order.
        assert_eq!(
            oa("touser=o1&msgtype=news&news[articles][1][title]=T2&news[articles][1][url]=http://u/2\
                &news[articles][0][title]=T1&news[articles][0][description]=D1\
                &news[articles][0][url]=http://u/1&news[articles][0][picurl]=http://p/1")
            .unwrap(),
            want
        );
    }

    #[test]
    fn json_bodies_and_the_other_types() {
        let cases = [
            json!({"touser":"o1","msgtype":"music","music":{"title":"t","description":"d","musicurl":"m","hqmusicurl":"h","thumb_media_id":"T"}}),
            json!({"touser":"o1","msgtype":"mpnews","mpnews":{"media_id":"M"}}),
            json!({"touser":"o1","msgtype":"wxcard","wxcard":{"card_id":"C"}}),
            json!({"touser":"o1","msgtype":"msgmenu","msgmenu":{"head_content":"h","list":[{"id":"101","content":"yes"},{"id":"102","content":"no"}],"tail_content":"t"}}),
            json!({"touser":"o1","msgtype":"miniprogrampage","miniprogrampage":{"title":"t","appid":"wxa","pagepath":"p?x=1","thumb_media_id":"T"}}),
            json!({"touser":"o1","msgtype":"text","text":{"content":"hi <a href=\"http://x\">x</a>"},"customservice":{"kf_account":"a@b"}}),
        ];
        for c in cases {
            assert_eq!(oa(&c.to_string()).unwrap(), c);
        }
        // Numbers in JSON become WeChat's strings; unknown fields are dropped.
        assert_eq!(
            oa(r#"{"touser":"o1","msgtype":"msgmenu","msgmenu":{"list":[{"id":101,"content":"y"}],"x":1}}"#).unwrap(),
            json!({"touser":"o1","msgtype":"msgmenu","msgmenu":{"head_content":"","list":[{"id":"101","content":"y"}],"tail_content":""}})
        );
    }

    #[test]
    fn mini_program_types() {
        let mp =
            |b: &str| KfMessage::parse(b.as_bytes(), AppKind::MiniProgram).map(|m| m.to_json());
        assert_eq!(
            mp("touser=o1&msgtype=link&link[title]=t&link[description]=d&link[url]=http://u&link[thumb_url]=http://p").unwrap(),
            json!({"touser":"o1","msgtype":"link","link":{"title":"t","description":"d","url":"http://u","thumb_url":"http://p"}})
        );
        assert_eq!(
            mp("touser=o1&msgtype=miniprogrampage&miniprogrampage[title]=t&miniprogrampage[pagepath]=p&miniprogrampage[thumb_media_id]=T").unwrap(),
            json!({"touser":"o1","msgtype":"miniprogrampage","miniprogrampage":{"title":"t","pagepath":"p","thumb_media_id":"T"}})
        );
        let err = mp("touser=o1&msgtype=voice&voice[media_id]=M").unwrap_err();
        assert!(err.to_string().contains("mini program"), "{err}");
    }

    #[test]
    fn mini_program_passive_replies() {
        let text = "<xml><ToUserName><![CDATA[oU]]></ToUserName><FromUserName><![CDATA[gh]]></FromUserName>\
                    <CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content></xml>";
        assert_eq!(
            plan_mini_program_reply(text, "oU").unwrap(),
            PassivePlan::Send(KfMessage::text("oU", "hi"))
        );
        let transfer = "<xml><ToUserName><![CDATA[oU]]></ToUserName><MsgType><![CDATA[transfer_customer_service]]></MsgType></xml>";
        assert_eq!(
            plan_mini_program_reply(transfer, "oU").unwrap(),
            PassivePlan::Keep
        );
        let image = "<xml><MsgType><![CDATA[image]]></MsgType><Image><MediaId><![CDATA[M1]]></MediaId></Image></xml>";
        let PassivePlan::Send(m) = plan_mini_program_reply(image, "oU").unwrap() else {
            panic!("image is sent")
        };
        assert_eq!(
            m.to_json(),
            json!({"touser":"oU","msgtype":"image","image":{"media_id":"M1"}})
        );
        let news = "<xml><MsgType><![CDATA[news]]></MsgType><ArticleCount>1</ArticleCount><Articles><item>\
                    <Title><![CDATA[T]]></Title><Description><![CDATA[D]]></Description><PicUrl><![CDATA[http://p]]></PicUrl>\
                    <Url><![CDATA[http://u]]></Url></item></Articles></xml>";
        let PassivePlan::Send(m) = plan_mini_program_reply(news, "oU").unwrap() else {
            panic!("news is sent")
        };
        assert_eq!(
            m.to_json(),
            json!({"touser":"oU","msgtype":"link","link":{"title":"T","description":"D","url":"http://u","thumb_url":"http://p"}})
        );
        assert!(plan_mini_program_reply("<xml><MsgType>music</MsgType></xml>", "oU").is_err());
    }

    #[test]
    fn hostile_forms_are_refused_without_recursing() {
        // 10,000 levels: the review's crash. Refused at the ninth level, not recursed into.
        let deep = format!("touser=o&msgtype=text&text{}=x", "[a]".repeat(10_000));
        assert!(matches!(oa(&deep), Err(KfError::TooComplex(m)) if m.contains("8")));
        let many: String = (0..300).map(|i| format!("f{i}=x&")).collect();
        assert!(matches!(oa(&many), Err(KfError::TooComplex(m)) if m.contains("256")));
        // Eight levels still decode.
        assert!(form_to_json([("a[1][2][3][4][5][6][7][8]".to_owned(), "x".to_owned())]).is_ok());
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("touser=o1&msgtype=text", "missing field text"),
            (
                "touser=o1&msgtype=text&text[content]=",
                "missing field text[content]",
            ),
            ("msgtype=text&text[content]=x", "missing field touser"),
            ("touser=o1&text[content]=x", "missing field msgtype"),
            (
                "touser=o1&msgtype=image&image[id]=x",
                "missing field image[media_id]",
            ),
            (
                "touser=o1&msgtype=news&news[articles][0][url]=u",
                "missing field news[articles][0][title]",
            ),
            ("touser=o1&msgtype=fax&fax[x]=1", "msgtype \"fax\""),
            ("{not json", "neither a form nor a JSON"),
            (
                "touser=o1&msgtype=text&text[a][b][c][d][e][f][g][h][i]=x",
                "deeper than 8",
            ),
            ("", "empty"),
        ];
        for (body, needle) in cases {
            let err = oa(body).unwrap_err().to_string();
            assert!(err.contains(needle), "{body:?}: {needle:?} not in {err:?}");
        }
    }
}
