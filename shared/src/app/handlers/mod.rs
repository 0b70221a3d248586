//! One handler module per route prefix. Each has a `check` of the request's head (before
//! its body is read) that returns a proof only it can make (the account and the part of
//! its config the route needs), and a `serve` that takes that proof: nothing is looked up
//! twice and no handler runs unauthenticated. The table in `app::routes` pairs them.

pub(crate) mod chatbot;
pub(crate) mod component;
mod gate;
pub(crate) mod media;
pub(crate) mod release;
pub(crate) mod tim;
pub(crate) mod udesk;
pub(crate) mod udesk_im;
pub(crate) mod wechat;
