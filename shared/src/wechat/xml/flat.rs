//! The fast path of `Doc::parse_xml`: WeChat's pushes, the envelopes around their
//! ciphertext and most desk replies are one level of simple elements under `<xml>`, each
//! holding one CDATA section or plain text. Such a document is read here in one pass
//! without quick-xml's event machinery; anything else (a declaration, a comment, a
//! reference, nesting, `\r`, an empty-element tag) is left to the full parser, which the
//! property test `flat_reader_agrees_with_the_full_parser` holds this one to.

use super::{MAX_ELEMENTS, Value};

/// One field of a flat document, borrowed from it.
pub(crate) struct Field<'a> {
    pub(crate) name: &'a str,
    pub(crate) text: &'a str,
    pub(crate) cdata: bool,
}

/// Calls `each` on every field in order; false when the document is not one this reader
/// takes (then nothing it was given may be used).
pub(crate) fn scan<'a>(input: &'a str, mut each: impl FnMut(Field<'a>)) -> bool {
    let Some(mut rest) = skip_ws(input).strip_prefix("<xml>") else {
        return false;
    };
    let mut count = 0;
    loop {
        rest = skip_ws(rest);
        if let Some(after) = rest.strip_prefix("</xml>") {
            return skip_ws(after).is_empty();
        }
        // The full parser counts `<xml>` itself among its MAX_ELEMENTS.
        count += 1;
        if count + 1 > MAX_ELEMENTS {
            return false;
        }
        let Some((field, after)) = field(rest) else {
            return false;
        };
        each(field);
        rest = after;
    }
}

/// The fields of a flat document, or None when the document is not one this reader takes.
pub(crate) fn read(input: &str) -> Option<Vec<(String, Value)>> {
    let mut fields = Vec::with_capacity(8);
    let flat = scan(input, |f| {
        let value = Value::Text {
            text: f.text.to_owned(),
            cdata: f.cdata,
        };
        fields.push((f.name.to_owned(), value));
    });
    flat.then_some(fields)
}

/// The first `name` field's text of a flat document, borrowed; the outer None when the
/// document is not flat.
pub(crate) fn first<'a>(input: &'a str, name: &str) -> Option<Option<&'a str>> {
    let mut found = None;
    let flat = scan(input, |f| {
        if found.is_none() && f.name == name {
            found = Some(f.text);
        }
    });
    flat.then_some(found)
}

/// `<Name>content</Name>` and what follows it.
fn field(s: &str) -> Option<(Field<'_>, &str)> {
    let (name, after_open) = open_tag(s)?;
    let (text, cdata, after_value) = content(after_open)?;
    let rest = close_tag(after_value, name)?;
    Some((Field { name, text, cdata }, rest))
}

fn skip_ws(s: &str) -> &str {
    s.trim_start_matches([' ', '\t', '\n'])
}

/// `<Name>`: a name of ASCII letters, digits and `_`, not `xml`'s own close.
fn open_tag(s: &str) -> Option<(&str, &str)> {
    let body = s.strip_prefix('<')?;
    let end = body.find('>')?;
    let name = &body[..end];
    let plain = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    plain.then(|| (name, &body[end + 1..]))
}

fn close_tag<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    s.strip_prefix("</")?.strip_prefix(name)?.strip_prefix('>')
}

/// One CDATA section, or plain text up to the next `<`; either free of what the full
/// parser would read differently. Returns the text, whether it was CDATA, and the rest.
fn content(s: &str) -> Option<(&str, bool, &str)> {
    if let Some(inner) = s.strip_prefix("<![CDATA[") {
        let end = cdata_end(inner.as_bytes())?;
        let text = &inner[..end];
        return literal(text).then(|| (text, true, &inner[end + 3..]));
    }
    let end = memchr::memchr(b'<', s.as_bytes())?;
    let text = &s[..end];
    (literal(text) && !text.contains('&')).then(|| (text, false, &s[end..]))
}

/// Where `]]>` starts (a `memmem::Finder` would be built again on every call).
fn cdata_end(b: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b']', b).find(|&i| b[i..].starts_with(b"]]>"))
}

/// No `\r` (the full parser normalizes line ends) and no other control character; the
/// control characters found eight bytes at a time (a ciphertext is hundreds of bytes).
fn literal(text: &str) -> bool {
    let b = text.as_bytes();
    !super::has_control(b) && memchr::memchr(b'\r', b).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::xml::Doc;
    use proptest::prelude::*;

    /// Documents near the flat shape: names, CDATA or text with the characters that make
    /// the difference (`&`, `\r`, `]]>`, `<`), whitespace, nesting, comments.
    fn nearly_flat() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("Content".to_owned()),
            Just("xml".to_owned()),
            "[A-Za-z_][A-Za-z0-9_:-]{0,6}"
        ];
        let text = prop_oneof![
            "[a-z0-9 ]{0,8}",
            Just("a&amp;b".to_owned()),
            Just("a\r\nb".to_owned()),
            Just("x]]>y".to_owned()),
            Just("1<2".to_owned()),
            Just("".to_owned()),
            Just("\u{1}".to_owned()),
        ];
        let element = (name, text, 0..6u8).prop_map(|(n, t, how)| match how {
            0 => format!("<{n}><![CDATA[{t}]]></{n}>"),
            1 => format!("<{n}>{t}</{n}>"),
            2 => format!("<{n}> <![CDATA[{t}]]></{n}>"),
            3 => format!("<{n}><a>{t}</a></{n}>"),
            4 => format!("<{n}/>"),
            _ => format!("<!-- {t} --><{n}>{t}</{n}>"),
        });
        (prop::collection::vec(element, 0..6), 0..4u8).prop_map(|(els, how)| {
            let body = els.join(if how == 1 { "\n " } else { "" });
            match how {
                2 => format!("<?xml version=\"1.0\"?><xml>{body}</xml>"),
                3 => format!("<xml>{body}</xml>trailing"),
                _ => format!(" <xml>{body}</xml>\n"),
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// What the flat reader takes, it reads exactly as the full parser does.
        #[test]
        fn flat_reader_agrees_with_the_full_parser(doc in nearly_flat()) {
            if let Some(fields) = read(&doc) {
                prop_assert_eq!(Ok(Doc { fields }), Doc::parse_xml_full(&doc), "{}", doc);
            }
            if let Some(found) = first(&doc, "Content") {
                let full = Doc::parse_xml_full(&doc);
                prop_assert_eq!(found, full.as_ref().ok().and_then(|d| d.get("Content")), "{}", doc);
            }
        }
    }

    #[test]
    fn takes_pushes_and_leaves_the_rest() {
        let push =
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName>\n<CreateTime>123</CreateTime></xml>";
        let fields = read(push).expect("a flat push");
        assert_eq!(fields[0], ("ToUserName".to_owned(), Value::text("gh_1")));
        assert_eq!(fields[1], ("CreateTime".to_owned(), Value::number(123)));
        for other in [
            "<?xml version=\"1.0\"?><xml></xml>",
            "<xml><A>a&amp;b</A></xml>",
            "<xml><A><B>1</B></A></xml>",
            "<xml><A/></xml>",
            "<xml><!-- c --></xml>",
            "<xml><A>1</A></xml><xml></xml>",
        ] {
            assert!(read(other).is_none(), "{other}");
        }
    }
}
