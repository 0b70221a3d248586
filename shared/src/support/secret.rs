//! Secrets: usable, comparable in constant time, never printed.

use serde::Deserialize;

/// A secret string: usable, comparable, never printed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
    /// Constant-time equality with a presented value.
    pub fn matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.0.len() == presented.len() && bool::from(self.0.as_bytes().ct_eq(presented.as_bytes()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A new gateway key: 32 hex digits (128 random bits), a URL path segment and a password.
pub(crate) fn new_gateway_key() -> Secret {
    let mut b = [0u8; 16];
    rand::fill(&mut b);
    Secret::new(crate::support::hex::hex_lower(&b))
}
