//! Lambda for `POST /chatbot/{appid}`: the Dialogue Platform's hand-off callback.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wxdesk::app::lambda::run(wxdesk::http::RouteKind::ChatbotHandoff).await
}
