//! Lambda for `POST /udesk/{appid}/{key}/message/template/send`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wxdesk::app::lambda::run(wxdesk::http::RouteKind::UdeskTemplateSend).await
}
