//! Inbound sources: requests that carry a customer's message towards a desk.

pub(crate) mod chatbot;
pub(crate) mod component;
pub(crate) mod wechat_push;
