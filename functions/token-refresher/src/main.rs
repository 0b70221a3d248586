//! Lambda run by an EventBridge schedule: renews access_tokens before they expire.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wxdesk::app::refresher::run_lambda().await
}
