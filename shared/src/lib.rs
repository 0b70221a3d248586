//! wxdesk: the middleware between WeChat (Official Accounts, Mini Programs) and
//! customer-service desks. Every Lambda function and the local server are thin shells
//! around this crate. The layers, lowest first (see docs/architecture.md): support, wechat codecs,
//! config, store, wechat clients, context, desk and transport, source, app.

#![warn(unreachable_pub)]

pub mod app;
pub mod config;
pub(crate) mod context;
pub mod desk;
pub mod http;
pub mod outbox;
pub(crate) mod source;
pub mod store;
pub mod support;
pub mod telemetry;
pub(crate) mod transport;
pub mod wechat;

pub use app::Services;
pub use config::Config;
