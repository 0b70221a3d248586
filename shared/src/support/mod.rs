//! Small building blocks with no knowledge of WeChat or desks: time, secrets, hex, retries
//! with back-off, local time stamps and URLs.

pub mod clock;
pub(crate) mod hex;
pub(crate) mod ids;
pub(crate) mod keys;
pub mod localtime;
pub mod outbound;
#[cfg(feature = "local")]
pub(crate) mod private_fs;
pub(crate) mod retry;
pub mod seal;
pub mod secret;
pub(crate) mod throttle;
pub mod tls;
pub(crate) mod url;
