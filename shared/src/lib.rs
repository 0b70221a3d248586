//! wxdesk: the middleware between WeChat (Official Accounts, Mini Programs) and
//! customer-service desks. Every Lambda function and the local server are thin shells
//! around this crate.

pub mod config;
pub mod desk;
pub mod doctor;
pub mod http;
#[cfg(feature = "local")]
pub mod local;
pub mod outbound;
pub mod refresher;
pub mod services;
pub mod source;
pub mod store;
pub mod support;
pub mod telemetry;
pub mod transport;
pub mod wechat;

pub use config::Config;
pub use services::Services;
