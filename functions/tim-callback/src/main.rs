//! Lambda for `POST /tim/{appid}`: Tencent IM callbacks; agents' replies go to WeChat.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wxdesk::app::lambda::run(wxdesk::http::RouteKind::TimCallback).await
}
