//! Lambda for `POST /chatbot/{appid}/{key}/event`: waiter events driven by a desk.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wxdesk::app::lambda::run(wxdesk::http::RouteKind::ChatbotEvent).await
}
