//! Lambda for `GET /udesk/{appid}/{key}/template/get_all_private_template`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wxdesk::app::lambda::run(wxdesk::http::RouteKind::UdeskTemplateList).await
}
