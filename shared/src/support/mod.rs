//! Small building blocks with no knowledge of WeChat or desks: time, secrets, hex, retries
//! with back-off, local time stamps and URLs.

pub mod clock;
pub mod hex;
pub mod ids;
pub(crate) mod keys;
pub mod localtime;
pub mod outbound;
#[cfg(feature = "local")]
pub(crate) mod private_fs;
pub mod retry;
pub mod secret;
pub mod throttle;
pub mod tls;
pub mod url;
