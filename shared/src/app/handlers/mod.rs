//! One handler module per desk-facing route prefix; the WeChat push and the Dialogue
//! Platform hand-off are sources (`crate::source`), called from `routes`.

pub mod chatbot;
pub mod media;
pub mod tim;
pub mod udesk;
pub mod udesk_im;
