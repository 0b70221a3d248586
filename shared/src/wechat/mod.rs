//! WeChat-side protocol: signatures, WXBizMsgCrypt, the message model and passive replies.

pub mod crypto;
pub mod message;
pub mod reply;
pub mod signature;
pub mod xml;
