//! WeChat-side protocol: signatures, WXBizMsgCrypt, the message model and passive replies.

pub(crate) mod api;
pub mod component;
pub mod crypto;
pub(crate) mod dialogue;
pub(crate) mod error;
pub mod kf;
pub(crate) mod media;
pub mod message;
pub mod platform;
pub mod quota;
pub(crate) mod refusals;
pub mod reply;
pub mod signature;
pub(crate) mod token;
pub mod xml;

/// What kind of WeChat account an appid is; it decides which messages it can send and take.
#[derive(Debug, Clone, Copy, serde::Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    OfficialAccount,
    MiniProgram,
}
