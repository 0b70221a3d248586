//! Identifiers from outside (appids, openids, IM UserIDs and message keys), each a type
//! built by one parser: a value of the type has been checked before it reaches a map, a
//! store key or a log line, so nothing downstream checks it again.

/// The longest appid wxdesk accepts (WeChat's are 18 characters).
pub(crate) const MAX_APPID_LEN: usize = 64;
/// WeChat openids are 28 characters; room for other shapes, never a 60 KB store key.
pub(crate) const MAX_OPENID_LEN: usize = 64;

/// Whether `s` is 1..=`max` ASCII letters, digits, '_' or '-': the one shape every
/// identifier here has (and the config's profile tag names).
pub(crate) fn is_identifier(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A value that is not an identifier of the kind asked for. It names the kind, never the
/// value (which came from outside).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be 1-{max} letters, digits, '_' or '-'")]
pub struct BadId {
    pub what: &'static str,
    pub max: usize,
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, serde::Serialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const MAX: usize = $max;

            pub fn parse(s: &str) -> Result<Self, BadId> {
                if is_identifier(s, $max) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(BadId { what: $what, max: $max })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = BadId;
            fn try_from(s: String) -> Result<Self, BadId> {
                if is_identifier(&s, $max) {
                    Ok(Self(s))
                } else {
                    Err(BadId { what: $what, max: $max })
                }
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        // Hash and Eq are String's, so a map keyed by the type is looked up by `&str`.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&self.0, f)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl From<&$name> for String {
            fn from(id: &$name) -> String {
                id.0.clone()
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

identifier!(
    /// An account's appid (an Official Account, a Mini Program, a Dialogue Platform bot).
    Appid,
    "an appid",
    MAX_APPID_LEN
);
identifier!(
    /// A customer's openid under one account (WeChat's `FromUserName`/`touser`).
    OpenId,
    "an openid",
    MAX_OPENID_LEN
);
identifier!(
    /// A Tencent IM UserID (an agent's, or a customer's: their openid), at most 32 bytes
    /// (Tencent Cloud Chat, "Importing a Single Account":
    /// https://www.tencentcloud.com/document/product/1047/34953).
    ImUserId,
    "an IM UserID",
    32
);
identifier!(
    /// A Tencent IM message key (`MsgKey`, or `{MsgSeq}_{MsgRandom}` where it is missing).
    ImMsgKey,
    "a Tencent IM message key",
    128
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_parser_per_kind_names_the_kind_never_the_value() {
        assert_eq!(
            Appid::parse("wx1234567890abcdef").unwrap(),
            "wx1234567890abcdef"
        );
        let e = OpenId::parse("o<script>").unwrap_err();
        assert_eq!(
            e.to_string(),
            "an openid must be 1-64 letters, digits, '_' or '-'"
        );
        assert!(ImUserId::parse(&"a".repeat(33)).is_err());
        assert!(ImUserId::parse(&"a".repeat(32)).is_ok());
        assert!(Appid::parse("").is_err());
        let parsed: Result<Appid, _> = serde_json::from_str("\"wx#1\"");
        assert!(parsed.is_err());
    }
}
