//! Inbound sources: requests that carry a customer's message towards a desk.

pub mod chatbot;
pub mod wechat_push;
