//! The integration tests, one binary: each module was its own test binary, and each
//! binary linked the AWS SDK again. `tls.rs` stays apart: it points the process's
//! trust roots at its own CA before any client reads them, which only a process of its
//! own can promise. Run one module with `cargo test -p wxdesk-tests --test it <module>::`.

mod aws_store;
mod callback_e2e;
mod chatbot;
mod coldstart;
mod component;
mod config_secret;
mod events;
mod faults;
mod registry;
mod scale;
mod security;
mod store_contract;
mod tencent_im;
mod udesk_gateway;
mod udesk_im;
