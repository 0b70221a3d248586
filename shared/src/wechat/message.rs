//! Typed model of what WeChat pushes to an Official Account or Mini Program: every message
//! type and the events the bridge cares about. Unknown types are kept, never rejected, so a
//! new WeChat feature degrades to "forward as is" instead of an error.

use super::xml::{Doc, XmlError};
use crate::support::keys;

/// Wire format of a push body, detected from the body itself (some Mini Program pushes
/// carry JSON under an XML content type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xml,
    Json,
}

impl Format {
    pub(crate) fn detect(body: &str) -> Option<Format> {
        match body
            .trim_start_matches('\u{feff}')
            .trim_start()
            .as_bytes()
            .first()?
        {
            b'<' => Some(Format::Xml),
            b'{' => Some(Format::Json),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("the body is neither XML nor JSON")]
    UnknownFormat,
    #[error(transparent)]
    Syntax(#[from] XmlError),
    #[error("required field {0} is missing or empty")]
    Missing(&'static str),
    #[error("field {field} is not a valid integer: {value:?}")]
    NotANumber { field: &'static str, value: String },
    #[error("field {0} appears more than once")]
    Repeated(String),
    #[error("field {field} is longer than {max} bytes")]
    TooLong { field: &'static str, max: usize },
}

/// The fields that become part of a dedup key, with WeChat's own bounds and some room:
/// MsgId is a 64-bit number, Event a short name, EventKey a menu key (128 bytes), a QR
/// scene (`qrscene_` + 64) or a menu URL (1024). A 60 KB MsgId passed DynamoDB's key
/// limit and so skipped dedup.
const KEY_FIELDS: [(&str, usize); 3] = [("MsgId", 64), ("Event", 64), ("EventKey", 1024)];

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Text {
        content: String,
        bizmsgmenuid: Option<String>,
    },
    Image {
        pic_url: String,
        media_id: String,
    },
    Voice {
        media_id: String,
        format: String,
        recognition: Option<String>,
    },
    Video {
        media_id: String,
        thumb_media_id: String,
    },
    ShortVideo {
        media_id: String,
        thumb_media_id: String,
    },
    Location {
        latitude: String,
        longitude: String,
        scale: String,
        label: String,
    },
    Link {
        title: String,
        description: String,
        url: String,
    },
    MiniProgramPage {
        title: String,
        app_id: String,
        page_path: String,
        thumb_url: String,
        thumb_media_id: String,
    },
    Event(Event),
    Unknown {
        msg_type: String,
    },
}

/// The most of a Mini Program's `SessionFrom` (the developer's context: a product, an
/// order) that a desk is shown.
const MAX_SESSION_FROM: usize = 256;

/// `SessionFrom` as a desk is shown it: trimmed and bounded.
pub(crate) fn shown_session_from(session_from: &str) -> String {
    session_from.trim().chars().take(MAX_SESSION_FROM).collect()
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `scene` is the `qrscene_` suffix when the user followed through a parametric QR code.
    Subscribe {
        scene: Option<String>,
        ticket: Option<String>,
    },
    Unsubscribe,
    Scan {
        scene: String,
        ticket: Option<String>,
    },
    Location {
        latitude: String,
        longitude: String,
        precision: String,
    },
    Click {
        key: String,
    },
    View {
        url: String,
        menu_id: Option<String>,
    },
    TemplateSendJobFinish {
        msg_id: String,
        status: String,
    },
    KfCreateSession {
        kf_account: String,
    },
    KfCloseSession {
        kf_account: String,
    },
    KfSwitchSession {
        from_kf_account: String,
        to_kf_account: String,
    },
    UserEnterTempSession {
        session_from: String,
    },
    Other {
        event: String,
    },
}

impl Event {
    /// The `Event` value as WeChat spells it.
    pub fn name(&self) -> &str {
        match self {
            Event::Subscribe { .. } => "subscribe",
            Event::Unsubscribe => "unsubscribe",
            Event::Scan { .. } => "SCAN",
            Event::Location { .. } => "LOCATION",
            Event::Click { .. } => "CLICK",
            Event::View { .. } => "VIEW",
            Event::TemplateSendJobFinish { .. } => "TEMPLATESENDJOBFINISH",
            Event::KfCreateSession { .. } => "kf_create_session",
            Event::KfCloseSession { .. } => "kf_close_session",
            Event::KfSwitchSession { .. } => "kf_switch_session",
            Event::UserEnterTempSession { .. } => "user_enter_tempsession",
            Event::Other { event } => event,
        }
    }
}

/// A parsed push. `doc` keeps every field as received, so nothing is lost on the way to
/// the desk even for fields this model does not name.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub to_user: String,
    pub from_user: String,
    pub create_time: i64,
    pub msg_id: Option<String>,
    pub kind: Kind,
    pub doc: Doc,
    pub format: Format,
}

impl Message {
    pub fn parse(body: &str) -> Result<Message, MessageError> {
        let format = Format::detect(body).ok_or(MessageError::UnknownFormat)?;
        let doc = match format {
            Format::Xml => Doc::parse_xml(body)?,
            Format::Json => Doc::parse_json(body)?,
        };
        Self::from_doc(doc, format)
    }

    pub(crate) fn from_doc(doc: Doc, format: Format) -> Result<Message, MessageError> {
        check_fields(&doc)?;
        let req = |name: &'static str| doc.non_empty(name).ok_or(MessageError::Missing(name));

        let from_user = req("FromUserName")?;
        let to_user = doc.text("ToUserName");
        let ct = req("CreateTime")?;
        let create_time = ct
            .trim()
            .parse::<i64>()
            .map_err(|_| MessageError::NotANumber {
                field: "CreateTime",
                value: ct.clone(),
            })?;
        let msg_type = req("MsgType")?;
        // Messages carry MsgId; template/mass-send events MsgID. Kept as text: it is 64-bit
        // and some JSON pushes send it as a string.
        let msg_id = doc.non_empty("MsgId");

        let kind = match msg_type.as_str() {
            "text" => Kind::Text {
                content: doc.text("Content"),
                bizmsgmenuid: doc.non_empty("bizmsgmenuid"),
            },
            "image" => Kind::Image {
                pic_url: doc.text("PicUrl"),
                media_id: doc.text("MediaId"),
            },
            "voice" => Kind::Voice {
                media_id: doc.text("MediaId"),
                format: doc.text("Format"),
                recognition: doc.non_empty("Recognition"),
            },
            "video" => Kind::Video {
                media_id: doc.text("MediaId"),
                thumb_media_id: doc.text("ThumbMediaId"),
            },
            "shortvideo" => Kind::ShortVideo {
                media_id: doc.text("MediaId"),
                thumb_media_id: doc.text("ThumbMediaId"),
            },
            "location" => Kind::Location {
                latitude: doc.text("Location_X"),
                longitude: doc.text("Location_Y"),
                scale: doc.text("Scale"),
                label: doc.text("Label"),
            },
            "link" => Kind::Link {
                title: doc.text("Title"),
                description: doc.text("Description"),
                url: doc.text("Url"),
            },
            "miniprogrampage" => Kind::MiniProgramPage {
                title: doc.text("Title"),
                app_id: doc.text("AppId"),
                page_path: doc.text("PagePath"),
                thumb_url: doc.text("ThumbUrl"),
                thumb_media_id: doc.text("ThumbMediaId"),
            },
            "event" => Kind::Event(parse_event(&doc)?),
            other => Kind::Unknown {
                msg_type: other.to_owned(),
            },
        };
        Ok(Message {
            to_user,
            from_user,
            create_time,
            msg_id,
            kind,
            doc,
            format,
        })
    }

    pub fn event(&self) -> Option<&Event> {
        match &self.kind {
            Kind::Event(e) => Some(e),
            _ => None,
        }
    }

    pub fn msg_type(&self) -> &str {
        self.doc.get("MsgType").unwrap_or("")
    }

    /// The dedup key WeChat's own rules imply: messages by MsgId + FromUserName + CreateTime
    /// (MsgId alone has collided in the field), events by FromUserName + CreateTime + Event
    /// (+ EventKey). Namespaced by appid so accounts never share keys.
    pub fn dedup_key(&self, appid: &str) -> String {
        match (&self.kind, &self.msg_id) {
            (Kind::Event(e), _) => {
                let (from, at, name) = (&self.from_user, &self.create_time, e.name());
                match self.doc.get("EventKey").filter(|k| !k.is_empty()) {
                    Some(k) => keys::key(appid, keys::Kind::Evt, &[from, at, &name, &k]),
                    None => keys::key(appid, keys::Kind::Evt, &[from, at, &name]),
                }
            }
            (_, Some(id)) => keys::key(
                appid,
                keys::Kind::Msg,
                &[id, &self.from_user, &self.create_time],
            ),
            // A message type without MsgId: fall back to the event rule with the type.
            (_, None) => keys::key(
                appid,
                keys::Kind::Typ,
                &[&self.from_user, &self.create_time, &self.msg_type()],
            ),
        }
    }

    /// The message as WeChat XML, the form the Udesk simulated-WeChat channel expects.
    /// An XML push is forwarded exactly as received by the caller; this is for JSON pushes.
    pub fn to_xml(&self) -> String {
        self.doc.to_xml()
    }
}

/// A push names each field once (a second `FromUserName` would let the desk read another
/// customer than the one we checked), and the dedup key's fields are bounded.
fn check_fields(doc: &Doc) -> Result<(), MessageError> {
    // Sorted names side by side, not a HashSet: a push has about ten fields, and hashing
    // them cost 3 % of the push pipeline's instructions (callgrind, bench/pipeline.rs).
    let mut names: Vec<&str> = doc.fields.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(MessageError::Repeated(pair[0].chars().take(64).collect()));
    }
    for (field, max) in KEY_FIELDS {
        if doc.get(field).is_some_and(|v| v.len() > max) {
            return Err(MessageError::TooLong { field, max });
        }
    }
    Ok(())
}

fn parse_event(doc: &Doc) -> Result<Event, MessageError> {
    let event = doc
        .get("Event")
        .filter(|v| !v.is_empty())
        .ok_or(MessageError::Missing("Event"))?;
    Ok(match event {
        "subscribe" => Event::Subscribe {
            scene: doc
                .non_empty("EventKey")
                .and_then(|k| k.strip_prefix("qrscene_").map(str::to_owned)),
            ticket: doc.non_empty("Ticket"),
        },
        "unsubscribe" => Event::Unsubscribe,
        "SCAN" => Event::Scan {
            scene: doc.text("EventKey"),
            ticket: doc.non_empty("Ticket"),
        },
        "LOCATION" => Event::Location {
            latitude: doc.text("Latitude"),
            longitude: doc.text("Longitude"),
            precision: doc.text("Precision"),
        },
        "CLICK" => Event::Click {
            key: doc.text("EventKey"),
        },
        "VIEW" => Event::View {
            url: doc.text("EventKey"),
            menu_id: doc.non_empty("MenuId"),
        },
        "TEMPLATESENDJOBFINISH" => Event::TemplateSendJobFinish {
            msg_id: doc.text("MsgID"),
            status: doc.text("Status"),
        },
        "kf_create_session" => Event::KfCreateSession {
            kf_account: doc.text("KfAccount"),
        },
        "kf_close_session" => Event::KfCloseSession {
            kf_account: doc.text("KfAccount"),
        },
        "kf_switch_session" => Event::KfSwitchSession {
            from_kf_account: doc.text("FromKfAccount"),
            to_kf_account: doc.text("ToKfAccount"),
        },
        "user_enter_tempsession" => Event::UserEnterTempSession {
            session_from: doc.text("SessionFrom"),
        },
        other => Event::Other {
            event: other.to_owned(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xml(fields: &str) -> String {
        format!(
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oUser]]></FromUserName>\
             <CreateTime>1700000000</CreateTime>{fields}</xml>"
        )
    }

    #[test]
    fn every_message_type() {
        let cases: Vec<(String, Kind)> = vec![
            (
                xml(
                    "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content><MsgId>1</MsgId><bizmsgmenuid>101</bizmsgmenuid>",
                ),
                Kind::Text {
                    content: "hi".into(),
                    bizmsgmenuid: Some("101".into()),
                },
            ),
            (
                xml(
                    "<MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[http://p]]></PicUrl><MediaId><![CDATA[m]]></MediaId><MsgId>2</MsgId>",
                ),
                Kind::Image {
                    pic_url: "http://p".into(),
                    media_id: "m".into(),
                },
            ),
            (
                xml(
                    "<MsgType><![CDATA[voice]]></MsgType><MediaId><![CDATA[m]]></MediaId><Format><![CDATA[amr]]></Format><Recognition><![CDATA[]]></Recognition><MsgId>3</MsgId>",
                ),
                Kind::Voice {
                    media_id: "m".into(),
                    format: "amr".into(),
                    recognition: None,
                },
            ),
            (
                xml(
                    "<MsgType><![CDATA[video]]></MsgType><MediaId><![CDATA[m]]></MediaId><ThumbMediaId><![CDATA[t]]></ThumbMediaId><MsgId>4</MsgId>",
                ),
                Kind::Video {
                    media_id: "m".into(),
                    thumb_media_id: "t".into(),
                },
            ),
            (
                xml(
                    "<MsgType><![CDATA[shortvideo]]></MsgType><MediaId><![CDATA[m]]></MediaId><ThumbMediaId><![CDATA[t]]></ThumbMediaId><MsgId>5</MsgId>",
                ),
                Kind::ShortVideo {
                    media_id: "m".into(),
                    thumb_media_id: "t".into(),
                },
            ),
            (
                xml(
                    "<MsgType><![CDATA[location]]></MsgType><Location_X>23.134521</Location_X><Location_Y>113.358803</Location_Y><Scale>20</Scale><Label><![CDATA[Guangzhou]]></Label><MsgId>6</MsgId>",
                ),
                Kind::Location {
                    latitude: "23.134521".into(),
                    longitude: "113.358803".into(),
                    scale: "20".into(),
                    label: "Guangzhou".into(),
                },
            ),
            (
                xml(
                    "<MsgType><![CDATA[link]]></MsgType><Title><![CDATA[T]]></Title><Description><![CDATA[D]]></Description><Url><![CDATA[http://u]]></Url><MsgId>7</MsgId>",
                ),
                Kind::Link {
                    title: "T".into(),
                    description: "D".into(),
                    url: "http://u".into(),
                },
            ),
            (
                xml(
                    "<MsgType><![CDATA[miniprogrampage]]></MsgType><Title><![CDATA[T]]></Title><AppId><![CDATA[wxmp]]></AppId><PagePath><![CDATA[p/i]]></PagePath><ThumbUrl><![CDATA[http://t]]></ThumbUrl><ThumbMediaId><![CDATA[tm]]></ThumbMediaId><MsgId>8</MsgId>",
                ),
                Kind::MiniProgramPage {
                    title: "T".into(),
                    app_id: "wxmp".into(),
                    page_path: "p/i".into(),
                    thumb_url: "http://t".into(),
                    thumb_media_id: "tm".into(),
                },
            ),
            (
                xml("<MsgType><![CDATA[hologram]]></MsgType><MsgId>9</MsgId>"),
                Kind::Unknown {
                    msg_type: "hologram".into(),
                },
            ),
        ];
        for (body, kind) in cases {
            let m = Message::parse(&body).unwrap();
            assert_eq!(m.kind, kind);
            assert_eq!(m.from_user, "oUser");
            assert_eq!(m.create_time, 1_700_000_000);
            assert_eq!(m.format, Format::Xml);
            assert!(m.msg_id.is_some());
        }
    }

    #[test]
    fn every_event_type() {
        let ev = |fields: &str| {
            Message::parse(&xml(&format!(
                "<MsgType><![CDATA[event]]></MsgType>{fields}"
            )))
            .unwrap()
            .event()
            .cloned()
            .unwrap()
        };
        assert_eq!(
            ev("<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[]]></EventKey>"),
            Event::Subscribe {
                scene: None,
                ticket: None
            }
        );
        assert_eq!(
            ev(
                "<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_123]]></EventKey><Ticket><![CDATA[TK]]></Ticket>"
            ),
            Event::Subscribe {
                scene: Some("123".into()),
                ticket: Some("TK".into())
            }
        );
        assert_eq!(
            ev("<Event><![CDATA[unsubscribe]]></Event>"),
            Event::Unsubscribe
        );
        assert_eq!(
            ev(
                "<Event><![CDATA[SCAN]]></Event><EventKey><![CDATA[123]]></EventKey><Ticket><![CDATA[TK]]></Ticket>"
            ),
            Event::Scan {
                scene: "123".into(),
                ticket: Some("TK".into())
            }
        );
        assert_eq!(
            ev(
                "<Event><![CDATA[LOCATION]]></Event><Latitude>23.1</Latitude><Longitude>113.3</Longitude><Precision>119.3</Precision>"
            ),
            Event::Location {
                latitude: "23.1".into(),
                longitude: "113.3".into(),
                precision: "119.3".into()
            }
        );
        assert_eq!(
            ev("<Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[V1001]]></EventKey>"),
            Event::Click {
                key: "V1001".into()
            }
        );
        assert_eq!(
            ev(
                "<Event><![CDATA[VIEW]]></Event><EventKey><![CDATA[http://x]]></EventKey><MenuId>3</MenuId>"
            ),
            Event::View {
                url: "http://x".into(),
                menu_id: Some("3".into())
            }
        );
        assert_eq!(
            ev(
                "<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>200163836</MsgID><Status><![CDATA[failed:user block]]></Status>"
            ),
            Event::TemplateSendJobFinish {
                msg_id: "200163836".into(),
                status: "failed:user block".into()
            }
        );
        assert_eq!(
            ev(
                "<Event><![CDATA[kf_create_session]]></Event><KfAccount><![CDATA[a@b]]></KfAccount>"
            ),
            Event::KfCreateSession {
                kf_account: "a@b".into()
            }
        );
        assert_eq!(
            ev("<Event><![CDATA[kf_close_session]]></Event><KfAccount><![CDATA[a@b]]></KfAccount>"),
            Event::KfCloseSession {
                kf_account: "a@b".into()
            }
        );
        assert_eq!(
            ev(
                "<Event><![CDATA[kf_switch_session]]></Event><FromKfAccount><![CDATA[a@b]]></FromKfAccount><ToKfAccount><![CDATA[c@b]]></ToKfAccount>"
            ),
            Event::KfSwitchSession {
                from_kf_account: "a@b".into(),
                to_kf_account: "c@b".into()
            }
        );
        assert_eq!(
            ev(
                "<Event><![CDATA[user_enter_tempsession]]></Event><SessionFrom><![CDATA[sf]]></SessionFrom>"
            ),
            Event::UserEnterTempSession {
                session_from: "sf".into()
            }
        );
        assert_eq!(
            ev("<Event><![CDATA[brand_new]]></Event>"),
            Event::Other {
                event: "brand_new".into()
            }
        );
    }

    #[test]
    fn mini_program_json_pushes_from_the_documentation() {
        let text = Message::parse(r#"{"ToUserName":"toUser","FromUserName":"fromUser","CreateTime":1482048670,"MsgType":"text","Content":"this is a test","MsgId":1234567890123456}"#).unwrap();
        assert_eq!(text.format, Format::Json);
        assert_eq!(
            text.kind,
            Kind::Text {
                content: "this is a test".into(),
                bizmsgmenuid: None
            }
        );
        assert_eq!(text.msg_id.as_deref(), Some("1234567890123456"));
        // The XML sent to the desk is the documentation's XML form: strings in CDATA, numbers bare.
        let x = text.to_xml();
        assert!(
            x.contains("<MsgType><![CDATA[text]]></MsgType>")
                && x.contains("<CreateTime>1482048670</CreateTime>"),
            "{x}"
        );
        assert_eq!(Message::parse(&x).unwrap().kind, text.kind);
        // MsgId as a string (cloud-function example) parses the same.
        let s = Message::parse(r#"{"FromUserName":"f","CreateTime":"1482048670","MsgType":"text","Content":"x","MsgId":"1234567890123456"}"#).unwrap();
        assert_eq!(s.msg_id.as_deref(), Some("1234567890123456"));
        let enter = Message::parse(r#"{"ToUserName":"toUser","FromUserName":"fromUser","CreateTime":1482048670,"MsgType":"event","Event":"user_enter_tempsession","SessionFrom":"sessionFrom"}"#).unwrap();
        assert_eq!(
            enter.event(),
            Some(&Event::UserEnterTempSession {
                session_from: "sessionFrom".into()
            })
        );
    }

    #[test]
    fn dedup_keys_follow_the_rules() {
        let m = Message::parse(&xml(
            "<MsgType>text</MsgType><Content>a</Content><MsgId>42</MsgId>",
        ))
        .unwrap();
        assert_eq!(m.dedup_key("wxA"), "wxA#msg#42#oUser#1700000000");
        assert_ne!(m.dedup_key("wxA"), m.dedup_key("wxB"));
        let e = Message::parse(&xml(
            "<MsgType>event</MsgType><Event>CLICK</Event><EventKey>K1</EventKey>",
        ))
        .unwrap();
        assert_eq!(e.dedup_key("wxA"), "wxA#evt#oUser#1700000000#CLICK#K1");
        let e2 = Message::parse(&xml(
            "<MsgType>event</MsgType><Event>CLICK</Event><EventKey>K2</EventKey>",
        ))
        .unwrap();
        assert_ne!(e.dedup_key("wxA"), e2.dedup_key("wxA"));
    }

    /// Review 2, §4: a second FromUserName reached the desk byte for byte, and a 60 KB
    /// MsgId skipped dedup.
    #[test]
    fn repeated_fields_and_oversized_key_fields_are_refused() {
        let twice = "<xml><ToUserName>gh</ToUserName><FromUserName>oA</FromUserName>\
                     <FromUserName>oVictim</FromUserName><CreateTime>1</CreateTime>\
                     <MsgType>text</MsgType><Content>x</Content><MsgId>1</MsgId></xml>";
        assert_eq!(
            Message::parse(twice),
            Err(MessageError::Repeated("FromUserName".into()))
        );
        let long_id = xml(&format!(
            "<MsgType>text</MsgType><Content>a</Content><MsgId>{}</MsgId>",
            "9".repeat(60_000)
        ));
        assert_eq!(
            Message::parse(&long_id),
            Err(MessageError::TooLong {
                field: "MsgId",
                max: 64
            })
        );
        let long_key = xml(&format!(
            "<MsgType>event</MsgType><Event>CLICK</Event><EventKey>{}</EventKey>",
            "k".repeat(1025)
        ));
        assert!(matches!(
            Message::parse(&long_key),
            Err(MessageError::TooLong {
                field: "EventKey",
                ..
            })
        ));
    }

    #[test]
    fn bad_pushes_are_errors() {
        assert_eq!(Message::parse("hello"), Err(MessageError::UnknownFormat));
        assert_eq!(
            Message::parse("<xml><MsgType>text</MsgType><CreateTime>1</CreateTime></xml>"),
            Err(MessageError::Missing("FromUserName"))
        );
        assert!(matches!(
            Message::parse(&xml("<MsgType>text</MsgType>").replace("1700000000", "soon")),
            Err(MessageError::NotANumber { .. })
        ));
        assert_eq!(
            Message::parse(&xml("<MsgType>event</MsgType>")),
            Err(MessageError::Missing("Event"))
        );
        assert!(matches!(
            Message::parse("<xml><FromUserName>a</Fr"),
            Err(MessageError::Syntax(_))
        ));
        assert!(matches!(
            Message::parse("{\"FromUserName\": "),
            Err(MessageError::Syntax(_))
        ));
    }
}
