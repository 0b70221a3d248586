//! Properties of the decoders that take input from outside: for any input they return a
//! value or an error, never panic, never recurse without bound, and produce output in
//! proportion to their input.

use proptest::prelude::*;
use wxdesk::config::AppKind;
use wxdesk::wechat::crypto::MsgCrypt;
use wxdesk::wechat::kf::{self, KfError, KfMessage, MAX_FIELDS, MAX_KEY_DEPTH};
use wxdesk::wechat::message::Message;
use wxdesk::wechat::xml::Doc;

const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

/// A form key: a name and up to 40 bracket segments (indexes, names, empty pushes).
fn form_key() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just(String::new()),
        (0u32..5).prop_map(|i| i.to_string()),
        "[a-z]{1,6}",
        "[^\\[\\]&=]{0,4}",
    ];
    ("[a-z]{1,8}", prop::collection::vec(seg, 0..40)).prop_map(|(head, segs)| {
        let mut k = head;
        for s in segs {
            k.push('[');
            k.push_str(&s);
            k.push(']');
        }
        k
    })
}

/// Any JSON value up to a few levels, with arbitrary keys.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[A-Za-z_<>\" ]{0,8}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Nested XML-ish text: well-formed or not, deep or not.
fn xmlish() -> impl Strategy<Value = String> {
    let name = prop_oneof![Just("xml".to_owned()), "[a-zA-Z]{1,5}"];
    (
        prop::collection::vec(name, 0..30),
        ".{0,20}",
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(names, text, close_all, cdata)| {
            let mut s = String::new();
            for n in &names {
                s.push_str(&format!("<{n}>"));
            }
            if cdata {
                s.push_str(&format!("<![CDATA[{text}]]>"));
            } else {
                s.push_str(&text);
            }
            let closing: Vec<_> = if close_all {
                names.iter().rev().collect()
            } else {
                names.iter().rev().skip(1).collect()
            };
            for n in closing {
                s.push_str(&format!("</{n}>"));
            }
            s
        })
}

fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

proptest! {
    // Each case builds up to 300 fields: fewer cases keep the suite quick.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn form_decoder_is_bounded(pairs in prop::collection::vec((form_key(), ".{0,8}"), 0..300)) {
        let input_len: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
        let too_many = pairs.len() > MAX_FIELDS;
        let too_deep = pairs
            .iter()
            .take(MAX_FIELDS)
            .any(|(k, _)| k.matches(']').count() > MAX_KEY_DEPTH);
        match kf::form_to_json(pairs) {
            Ok(v) => {
                prop_assert!(!too_many);
                prop_assert!(depth(&v) <= MAX_KEY_DEPTH + 1);
                prop_assert!(v.to_string().len() <= 8 * input_len + 64);
            }
            Err(KfError::TooComplex(_)) => prop_assert!(too_many || too_deep),
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn kf_parse_never_panics(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = KfMessage::parse(&body, AppKind::OfficialAccount);
        let _ = KfMessage::parse(&body, AppKind::MiniProgram);
    }

    #[test]
    fn xml_parser_is_bounded(input in xmlish()) {
        if let Ok(doc) = Doc::parse_xml(&input) {
            // Whatever parsed writes back out as XML that parses again, and writing is
            // stable from then on (characters XML forbids are dropped on the way out).
            let xml = doc.to_xml();
            let again = Doc::parse_xml(&xml);
            prop_assert!(again.is_ok(), "{}", xml);
            prop_assert_eq!(again.unwrap().to_xml(), xml);
        }
        let _ = Message::parse(&input);
    }

    #[test]
    fn xml_parser_takes_any_text(input in ".{0,400}") {
        let _ = Doc::parse_xml(&input);
        let _ = Message::parse(&input);
    }

    #[test]
    fn json_pushes_become_well_formed_xml(v in json_value()) {
        let text = serde_json::json!({"MsgType": "text", "doc": v}).to_string();
        if let Ok(doc) = Doc::parse_json(&text) {
            // Every key that made it is a plain element name: the XML parses back.
            let xml = doc.to_xml();
            prop_assert!(Doc::parse_xml(&xml).is_ok(), "{}", xml);
            prop_assert!(xml.len() <= 16 * text.len() + 64);
        }
        let _ = Message::parse(&text);
    }

    #[test]
    fn crypto_envelope_round_trips(msg in ".{0,300}", rid in "[a-zA-Z0-9]{1,20}") {
        let c = MsgCrypt::new(KEY).unwrap();
        let enc = c.encrypt(&msg, &rid);
        prop_assert_eq!(c.decrypt(&enc, &rid).unwrap(), msg);
        prop_assert!(c.decrypt(&enc, "wxsomeoneelse").is_err());
    }

    #[test]
    fn crypto_envelope_refuses_garbage_without_panicking(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        flip in any::<prop::sample::Index>(),
    ) {
        use base64::Engine as _;
        let c = MsgCrypt::new(KEY).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let _ = c.decrypt(&b64, "wx");
        let _ = c.decrypt_raw(&String::from_utf8_lossy(&bytes));
        // A tampered real envelope: an error or another plaintext, never a panic.
        let enc = c.encrypt("<xml><a>1</a></xml>", "wx");
        let mut raw = base64::engine::general_purpose::STANDARD.decode(&enc).unwrap();
        let i = flip.index(raw.len());
        raw[i] ^= 0x5a;
        let _ = c.decrypt(&base64::engine::general_purpose::STANDARD.encode(&raw), "wx");
    }
}
