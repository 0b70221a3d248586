//! Lambda fed by the SQS FIFO delivery queue (partial batch responses) and by an
//! EventBridge schedule (the outbox sweep): delivers what could not be delivered in time.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wxdesk::app::worker::run_lambda().await
}
