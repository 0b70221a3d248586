//! Lambda for `POST /udesk-im/{appid}`: agent messages from Udesk's message interface.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wxdesk::app::lambda::run(wxdesk::http::RouteKind::UdeskImPush).await
}
