//! Lambda for `GET|POST /udesk/{appid}/{key}`: the Udesk simulated WeChat domain.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wxdesk::app::lambda::run(wxdesk::http::RouteKind::UdeskGateway).await
}
