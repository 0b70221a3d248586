//! The Lambda binary's dispatch: which role a function of template.yaml runs, by the name
//! its `WXDESK_FUNCTION` gives it. One binary serves them all (built once by `sam build`).

use crate::http::RouteKind;

/// The functions of template.yaml, by the name its `WXDESK_FUNCTION` gives each: one
/// binary serves them all (built once by `sam build`), each function running one role.
pub const FUNCTIONS: [&str; 10] = [
    "wechat-callback",
    "udesk-gateway",
    "udesk-template-list",
    "udesk-template-send",
    "udesk-im-push",
    "tim-callback",
    "chatbot-handoff",
    "chatbot-event",
    "token-refresher",
    "deliver-worker",
];

/// The whole main of the Lambda binary: runs the role `function` names.
pub async fn run_function(function: &str) -> Result<(), lambda_http::Error> {
    let kind = match function {
        "wechat-callback" => RouteKind::WechatCallback,
        "udesk-gateway" => RouteKind::UdeskGateway,
        "udesk-template-list" => RouteKind::UdeskTemplateList,
        "udesk-template-send" => RouteKind::UdeskTemplateSend,
        "udesk-im-push" => RouteKind::UdeskImPush,
        "tim-callback" => RouteKind::TimCallback,
        "chatbot-handoff" => RouteKind::ChatbotHandoff,
        "chatbot-event" => RouteKind::ChatbotEvent,
        "token-refresher" => return crate::app::refresher::run_lambda().await,
        "deliver-worker" => return crate::app::worker::run_lambda().await,
        other => {
            crate::telemetry::init();
            let why = format!(
                "WXDESK_FUNCTION={other:?} names no function (one of {})",
                FUNCTIONS.join(", ")
            );
            tracing::error!("{why}");
            return Err(why.into());
        }
    };
    crate::app::lambda::run(kind).await
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn an_unknown_function_name_is_an_error_naming_the_choices() {
        let err = super::run_function("wechat-calback").await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("wechat-calback") && text.contains("deliver-worker"),
            "{text}"
        );
    }
}
