//! The fast path of `Doc::parse_json`: a Mini Program push (or its ciphertext envelope) is
//! one object of a dozen scalar members. serde_json's parser feeds the document's fields
//! straight into the `Doc`, without building a `serde_json::Value` (a map node and a
//! boxed string per member) to convert and drop. Only what this path is sure of comes out
//! of it: a duplicate key, a key that is no element name, an object of more than
//! `MAX_MEMBERS`, nesting at the depth cap, or anything serde_json refuses, sends the
//! document to the full conversion, which answers it exactly as before; the property test
//! `fast_json_agrees_with_the_value_conversion` holds the two together.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::{MAX_DEPTH, Value, is_xml_name};

/// WeChat's objects have at most a few dozen members; past this the duplicate check below
/// (linear per key) is left to the full conversion's map.
const MAX_MEMBERS: usize = 32;

/// The fields of a JSON object, in the order the full conversion gives them (its map
/// sorts keys); None when the document is not one this path takes.
pub(super) fn read(input: &str) -> Option<Vec<(String, Value)>> {
    let mut de = serde_json::Deserializer::from_str(input);
    let mut out = Vec::new();
    de::Deserializer::deserialize_map(
        &mut de,
        Members {
            depth: 0,
            out: &mut out,
        },
    )
    .ok()?;
    de.end().ok()?;
    Some(out)
}

/// Not taken here: the caller converts the document the full way.
fn leave<E: de::Error>() -> E {
    E::custom("left to the full conversion")
}

/// An object's members, appended to `out` as fields at `depth`.
struct Members<'o> {
    depth: usize,
    out: &'o mut Vec<(String, Value)>,
}

impl<'de> Visitor<'de> for Members<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let start = self.out.len();
        let mut members = 0;
        while let Some(key) = map.next_key::<String>()? {
            members += 1;
            let repeated = self.out[start..].iter().any(|(k, _)| *k == key);
            if members > MAX_MEMBERS || repeated || !is_xml_name(&key) {
                return Err(leave());
            }
            map.next_value_seed(Entry {
                key,
                depth: self.depth,
                out: self.out,
            })?;
        }
        // Stable: an array's items stay in order under their one key.
        self.out[start..].sort_by(|a, b| a.0.cmp(&b.0));
        Ok(())
    }
}

/// One member's value, appended to `out` under `key` (an array as one field per item).
struct Entry<'o> {
    key: String,
    depth: usize,
    out: &'o mut Vec<(String, Value)>,
}

impl<'de> DeserializeSeed<'de> for Entry<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Entry<'_> {
    fn push<E>(self, value: Value) -> Result<(), E> {
        self.out.push((self.key, value));
        Ok(())
    }
}

impl<'de> Visitor<'de> for Entry<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.push(Value::Text {
            text: String::new(),
            cdata: false,
        })
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<(), E> {
        self.push(Value::number(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<(), E> {
        self.push(Value::number(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<(), E> {
        self.push(Value::number(n))
    }

    /// Written as serde_json writes its own numbers, so the text is the full path's.
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<(), E> {
        match serde_json::Number::from_f64(n) {
            Some(n) => self.push(Value::number(n)),
            None => Err(leave()),
        }
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.push(Value::text(s))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<(), E> {
        self.push(Value::text(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(leave());
        }
        while seq
            .next_element_seed(Entry {
                key: self.key.clone(),
                depth: self.depth + 1,
                out: &mut *self.out,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(leave());
        }
        let mut children = Vec::new();
        Members {
            depth: self.depth + 1,
            out: &mut children,
        }
        .visit_map(map)?;
        self.push(Value::Children(children))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::xml::Doc;
    use proptest::prelude::*;

    /// JSON near a push's shape: names good and bad, repeated keys, every scalar kind,
    /// arrays and objects, escapes, and some depth.
    fn nearly_a_push() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value as J;
        let leaf = prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            any::<i64>().prop_map(J::from),
            any::<u64>().prop_map(J::from),
            (-1e12f64..1e12).prop_map(J::from),
            "[a-z0-9 \"\\\\<&\u{0}\u{4e2d}]{0,6}".prop_map(J::String),
        ];
        leaf.prop_recursive(10, 64, 6, |inner| {
            let key = prop_oneof![
                "[A-Za-z_][A-Za-z0-9_]{0,4}",
                Just("xmlns".to_owned()),
                Just("1bad".to_owned()),
                Just("a".to_owned()),
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(J::Array),
                prop::collection::vec((key, inner), 0..6)
                    .prop_map(|m| J::Object(m.into_iter().collect())),
            ]
        })
    }

    /// The same members written with a repeated key (serde_json's map keeps one).
    fn with_repeats(v: &serde_json::Value) -> String {
        let text = v.to_string();
        match text.strip_prefix('{') {
            Some(rest) if rest != "}" => format!("{{\"a\":1,{rest}"),
            _ => text,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// What the fast path takes, it converts exactly as the full conversion does.
        #[test]
        fn fast_json_agrees_with_the_value_conversion(v in nearly_a_push()) {
            for doc in [v.to_string(), with_repeats(&v)] {
                if let Some(fields) = read(&doc) {
                    prop_assert_eq!(Ok(Doc { fields }), Doc::parse_json_full(&doc), "{}", doc);
                }
            }
        }
    }

    #[test]
    fn takes_pushes_and_leaves_the_rest() {
        let push = r#"{"ToUserName":"gh_1","CreateTime":1714112445,"Content":"a\u4e2d\"b","MsgId":24000000000000001,"Rate":1.5,"Null":null}"#;
        let fields = read(push).expect("a flat push");
        let doc = Doc { fields };
        assert_eq!(Ok(doc.clone()), Doc::parse_json_full(push));
        assert_eq!(doc.get("Content"), Some("a\u{4e2d}\"b"));
        assert_eq!(doc.get("CreateTime"), Some("1714112445"));
        assert_eq!(doc.fields[0].0, "Content", "keys in the map's order");
        for other in [
            "[1]",
            "\"x\"",
            r#"{"a":1,"a":2}"#,
            r#"{"1bad":1}"#,
            r#"{"a":1} x"#,
            r#"{"a":"#,
        ] {
            assert!(read(other).is_none(), "{other}");
        }
    }
}
