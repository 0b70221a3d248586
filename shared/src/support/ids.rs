//! The shape of identifiers from outside (appids, openids, IM UserIDs), checked before such
//! a value reaches a map, a store key or a log line.

/// The longest appid wxdesk accepts (WeChat's are 18 characters).
pub(crate) const MAX_APPID_LEN: usize = 64;
/// WeChat openids are 28 characters; room for other shapes, never a 60 KB store key.
pub(crate) const MAX_OPENID_LEN: usize = 64;

/// Whether `s` is 1..=`max` ASCII letters, digits, '_' or '-': the shape of appids, openids
/// and IM UserIDs, checked before such a value reaches a map, a store key or a log line.
pub(crate) fn is_identifier(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
