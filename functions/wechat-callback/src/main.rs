//! Lambda for `GET|POST /wechat/{appid}`: WeChat's message-push URL.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wxdesk::app::lambda::run(wxdesk::http::RouteKind::WechatCallback).await
}
