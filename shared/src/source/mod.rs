//! Inbound sources: requests that carry a customer's message towards a desk.

pub mod wechat_push;
