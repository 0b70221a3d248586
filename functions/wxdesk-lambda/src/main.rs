//! The Lambda binary. template.yaml gives every function this same bootstrap (built once)
//! and names its role in `WXDESK_FUNCTION`: `wechat-callback`, `udesk-gateway`,
//! `udesk-template-list`, `udesk-template-send`, `udesk-im-push`, `tim-callback`,
//! `chatbot-handoff`, `chatbot-event`, `token-refresher` or `deliver-worker`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let function = std::env::var("WXDESK_FUNCTION").unwrap_or_default();
    wxdesk::app::functions::run_function(&function).await
}
