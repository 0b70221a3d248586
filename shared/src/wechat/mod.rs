//! WeChat-side protocol: signatures, WXBizMsgCrypt, the message model and passive replies.

pub mod api;
pub mod crypto;
pub mod dialogue;
pub mod error;
pub mod kf;
pub mod media;
pub mod message;
pub mod reply;
pub mod signature;
pub mod token;
pub mod xml;
